// Storage account for backups: private `backups` container, blob soft delete and versioning,
// Entra ID only (shared keys off), network default Deny. Production reaches it only through
// the private endpoint (main.bicep); an environment with publicAccess on also admits the
// allowedIpRanges. The lifecycle rule tiers backups to cool and deletes them by age, but
// only blobs emrops tagged `emrops-pinned=false`: a pinned backup's blobs carry
// `emrops-pinned=true` (set by `emrops backup pin`) and untagged blobs are never deleted.

@description('Azure region.')
param location string

@description('Tags shared by every resource.')
param tags object

@description('Storage account name (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param accountName string

@description('Replication: Standard_GZRS in production, Standard_LRS in staging.')
param skuName string

@description('Days before a backup moves to the cool tier.')
param coolAfterDays int

@description('Days before an unpinned backup is deleted.')
param deleteAfterDays int

@description('Days back a container can be restored to (point-in-time restore, with change feed); 0: off. Must stay below the 14 days of blob soft delete.')
@minValue(0)
@maxValue(13)
param pointInTimeRestoreDays int

@description('Log Analytics workspace for diagnostics.')
param logAnalyticsWorkspaceId string

@description('Accept traffic from the public internet (only from allowedIpRanges).')
param publicAccess bool

@description('IPv4 addresses or CIDR ranges admitted when publicAccess is on.')
param allowedIpRanges array

@description('Principal (the app identity) that gets Storage Blob Data Contributor on the backups container only.')
param contributorPrincipalId string

@description('Put a CanNotDelete lock on the account (production data).')
param lock bool

var lockName = 'emrops-data-lock'

var blobDataContributorRole = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var pinTag = 'emrops-pinned'
var pointInTimeRestore = pointInTimeRestoreDays > 0

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  #checkov:skip=CKV_AZURE_43:The name is computed in main.bicep from take(prefix + uniqueString(), 24): lowercase letters and digits
  #checkov:skip=CKV_AZURE_33:Queue service is not used; logging goes to the workspace through diagnostic settings
  #checkov:skip=CKV_AZURE_206:Replication is the backupStorageSku parameter: Standard_GZRS in production, Standard_LRS in staging to save cost; tests/provision/test_session14.py asserts both
  #checkov:skip=CKV2_AZURE_1:Microsoft-managed keys; backups are already encrypted client-side by emrops
  #checkov:skip=CKV2_AZURE_41:No SAS tokens are issued (shared keys are off), so there is no SAS expiration policy to set
  name: accountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: publicAccess ? 'Enabled' : 'Disabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Deny'
      ipRules: [for range in (publicAccess ? allowedIpRanges : []): {
        value: range
        action: 'Allow'
      }]
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
    // Point-in-time restore (Azure's recommended blob data protection, with versioning and
    // soft delete): undoes overwrites and deletes of backup blobs across the container,
    // e.g. after a compromised writer. It needs the change feed.
    changeFeed: pointInTimeRestore ? {
      enabled: true
      retentionInDays: 30
    } : {
      enabled: false
    }
    restorePolicy: pointInTimeRestore ? {
      enabled: true
      days: pointInTimeRestoreDays
    } : {
      enabled: false
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

resource backupWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(backups.id, contributorPrincipalId, blobDataContributorRole)
  scope: backups
  properties: {
    principalId: contributorPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', blobDataContributorRole)
  }
}

// Storage Blob Data Contributor cannot set blob index tags; emrops tags every backup blob
// (emrops-pinned), so the app identity also gets this narrow role on the container.
resource tagRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(resourceGroup().id, accountName, 'emrops-backup-tags')
  properties: {
    roleName: 'emrops backup tags ${accountName}'
    description: 'Read and write blob index tags (emrops-pinned) of backup blobs.'
    type: 'CustomRole'
    permissions: [
      {
        actions: []
        notActions: []
        dataActions: [
          'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags/read'
          'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/tags/write'
        ]
        notDataActions: []
      }
    ]
    assignableScopes: [
      resourceGroup().id
    ]
  }
}

resource backupTagger 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(backups.id, contributorPrincipalId, 'emrops-backup-tags')
  scope: backups
  properties: {
    principalId: contributorPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: tagRole.id
  }
}

resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'tier-backups'
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
              }
              version: {
                delete: {
                  daysAfterCreationGreaterThan: 30
                }
              }
            }
          }
        }
        {
          name: 'expire-unpinned-backups'
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
              blobIndexMatch: [
                {
                  name: pinTag
                  op: '=='
                  value: 'false'
                }
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: deleteAfterDays
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

// Production data: a CanNotDelete lock (lockDataResources) keeps the backup account from being deleted by
// a slip (portal, CLI, a resource group delete); updates still go through.
// It does not guard the blobs themselves (data plane): soft delete and versioning do.
resource accountLock 'Microsoft.Authorization/locks@2020-05-01' = if (lock) {
  name: lockName
  scope: account
  properties: {
    level: 'CanNotDelete'
    notes: 'Production data (lockDataResources in environments/production.toml). To delete on purpose: verify a recent backup, then az lock delete --name ${lockName} --resource-group ${resourceGroup().name} --resource ${accountName} --resource-type Microsoft.Storage/storageAccounts. The next provision apply puts the lock back while lockDataResources is true.'
  }
}

@description('Storage account name.')
output accountName string = account.name

@description('Storage account id (for its private endpoint).')
output id string = account.id

@description('Blob endpoint URL (emrops azure.storage_account_url).')
output blobEndpoint string = account.properties.primaryEndpoints.blob
