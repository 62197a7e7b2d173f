// Log Analytics + Application Insights, the alert action group, and the backup
// heartbeat alert. emrops sends no telemetry of its own: the heartbeat is what the backup store
// saw. A backup is published when its manifest.json is committed (written last, after the data
// file), and the backup storage account sends its StorageWrite logs to this workspace
// (storage.bicep, blobDiagnostics), so a committed manifest is a StorageBlobLogs row.

@description('Azure region.')
param location string

@description('Tags shared by every resource.')
param tags object

@description('Base for resource names.')
param baseName string

@description('E-mail address that receives alerts.')
param alertEmail string

@description('Minutes without a successful backup before the alert fires.')
param backupHeartbeatMinutes int

@description('Principal (the app identity) that publishes telemetry with Entra ID: local (key) ingestion is off.')
param telemetryPublisherPrincipalId string

// Monitoring Metrics Publisher: despite the name, it publishes all telemetry to the resource
var metricsPublisherRole = '3913510d-42f4-4e42-8a64-420c390055eb'

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: '${baseName}-logs'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 90
    // Entra ID only (Azure Policy "Log Analytics workspaces should block non-Azure Active
    // Directory based ingestion"): diagnostic settings and Application Insights need no
    // workspace key, and nothing here sends with one
    features: {
      disableLocalAuth: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: '${baseName}-ai'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

// DisableLocalAuth refuses telemetry authorized by the instrumentation key alone; the app
// identity sends it with Entra ID (APPLICATIONINSIGHTS_AUTHENTICATION_STRING in app.bicep).
resource telemetryPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, telemetryPublisherPrincipalId, metricsPublisherRole)
  scope: appInsights
  properties: {
    principalId: telemetryPublisherPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', metricsPublisherRole)
  }
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: take('${baseName}-ops', 64)
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'emrsim-ops'
    enabled: true
    emailReceivers: [
      {
        name: 'ops-email'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

resource backupHeartbeat 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = {
  name: '${baseName}-backup-heartbeat'
  location: location
  tags: tags
  properties: {
    description: 'No emrops backup published to the backup storage account (no manifest.json committed) within the heartbeat window.'
    severity: 1
    enabled: true
    scopes: [
      workspace.id
    ]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT${backupHeartbeatMinutes}M'
    criteria: {
      allOf: [
        {
          query: 'StorageBlobLogs | where OperationName in ("PutBlockList", "PutBlob") and StatusText == "Success" and ObjectKey endswith "/manifest.json"'
          timeAggregation: 'Count'
          operator: 'LessThan'
          threshold: 1
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

@description('Log Analytics workspace id.')
output workspaceId string = workspace.id

@description('Application Insights resource id.')
output appInsightsId string = appInsights.id

@description('Application Insights connection string (an ingestion endpoint, not a secret).')
output appInsightsConnectionString string = appInsights.properties.ConnectionString

@description('Action group id.')
output actionGroupId string = actionGroup.id
