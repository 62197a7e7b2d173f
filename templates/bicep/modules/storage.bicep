// Storage account for backups: private `backups` container, blob soft delete and
// versioning, and a lifecycle rule that tiers backups to cool and then deletes them.

@description('Azure region.')
param location string

@description('Tags shared by every resource.')
param tags object

@description('Storage account name (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param accountName string

@description('Days before a backup moves to the cool tier.')
param coolAfterDays int

@description('Days before a backup is deleted.')
param deleteAfterDays int

@description('Log Analytics workspace for diagnostics.')
param logAnalyticsWorkspaceId string

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  #checkov:skip=CKV_AZURE_35:Backups are written from CI runners without fixed IPs; access needs Entra ID and TLS
  #checkov:skip=CKV_AZURE_43:The name is computed in main.bicep from take(prefix + uniqueString(), 24): lowercase letters and digits
  #checkov:skip=CKV_AZURE_33:Queue service is not used; logging goes to the workspace through diagnostic settings
  #checkov:skip=CKV_AZURE_59:Backups are uploaded from CI runners and operators' machines over TLS with Entra ID auth
  #checkov:skip=CKV_AZURE_206:Locally redundant storage keeps costs down; backups are also copied off-site by emrops
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys; backups are already encrypted client-side by emrops
  #checkov:skip=CKV2_AZURE_33:No private endpoint: there is no virtual network in this deployment
  #checkov:skip=CKV2_AZURE_40:Shared key access stays on for azcopy-based restores in an emergency
  #checkov:skip=CKV2_AZURE_41:No SAS tokens are issued, so there is no SAS expiration policy to set
  name: accountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    isVersioningEnabled: true
    deleteRetentionPolicy: {
      enabled: true
      days: 14
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 14
    }
  }
}

resource backups 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: 'backups'
  properties: {
    publicAccess: 'None'
  }
}

resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'tier-and-expire-backups'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                'backups/'
              ]
            }
            actions: {
              baseBlob: {
                tierToCool: {
                  daysAfterModificationGreaterThan: coolAfterDays
                }
                delete: {
                  daysAfterModificationGreaterThan: deleteAfterDays
                }
              }
              version: {
                delete: {
                  daysAfterCreationGreaterThan: 30
                }
              }
            }
          }
        }
      ]
    }
  }
}

resource blobDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'blob-to-workspace'
  scope: blobService
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'StorageRead'
        enabled: true
      }
      {
        category: 'StorageWrite'
        enabled: true
      }
      {
        category: 'StorageDelete'
        enabled: true
      }
    ]
  }
}

@description('Storage account name.')
output accountName string = account.name
